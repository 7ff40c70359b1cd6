"""Scores of events above a threshold: exceedance_frequency (the wet fraction) and fss, the
fractions skill score (Roberts and Lean 2008), against hand vectors, closed forms and
scores.spatial.fss_2d."""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pytest
import xarray as xr
from metrics_helpers import raising_scheduler

import flexdownscale.metrics as fm
from flexdownscale.errors import ConfigError, ShapeError, UnitsError, WeightsError


def _rain(shape, seed, nan_cells=0):
    """Intermittent fields (gamma, shape 0.3) with ``nan_cells`` NaN cells."""
    rng = np.random.default_rng(seed)
    values = rng.gamma(0.3, 1.0, shape)
    if nan_cells:
        flat = values.reshape(-1)
        flat[rng.choice(flat.size, nan_cells, replace=False)] = np.nan
    dims = ("member", "time", "y", "x")[-len(shape) :]
    return xr.DataArray(values, dims=dims, attrs={"units": "mm"})


def _scores_fss(f, o, threshold, window, **kw):
    scores_spatial = pytest.importorskip("scores.spatial")
    with warnings.catch_warnings():  # its DimensionWarning on dims it keeps by default
        warnings.simplefilter("ignore")
        return scores_spatial.fss_2d(
            f,
            o,
            event_threshold=threshold,
            window_size=(window, window),
            spatial_dims=("y", "x"),
            threshold_operator=np.greater_equal,
            **kw,
        )


# ---------------------------------------------------------------------------------------------
# exceedance frequency
# ---------------------------------------------------------------------------------------------
def test_exceedance_frequency_hand_vector_and_operator():
    rain = xr.DataArray([0.0, 0.05, 0.1, 2.0, np.nan], dims="x", attrs={"units": "mm"})
    assert float(fm.exceedance_frequency(rain, threshold=0.1)) == 0.5
    assert float(fm.exceedance_frequency(rain, threshold=0.1, inclusive=False)) == 0.25
    out = fm.exceedance_frequency(rain, threshold=0.1, skipna=False)
    assert np.isnan(float(out))
    assert out.attrs["units"] == "1"


def test_exceedance_frequency_weights_dims_and_datasets():
    rain = xr.DataArray(
        [[1.0, 0.0], [1.0, 1.0]], dims=("lat", "lon"), coords={"lat": [0.0, 60.0], "lon": [0, 1]}
    )
    w = xr.DataArray([3.0, 1.0], dims="lat", coords={"lat": [0.0, 60.0]})
    # (3 * 1/2 + 1 * 1) / 4
    assert float(fm.exceedance_frequency(rain, threshold=0.5, weights=w)) == 0.625
    per_lat = fm.exceedance_frequency(rain, threshold=0.5, preserve_dims="lat")
    np.testing.assert_array_equal(per_lat.values, [0.5, 1.0])
    ds = xr.Dataset({"a": rain, "b": 10 * rain})
    out = fm.exceedance_frequency(ds, threshold={"a": 0.5, "b": 20.0})
    assert float(out["a"]) == 0.75
    assert float(out["b"]) == 0.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "0.1 mm", None, True])
def test_exceedance_frequency_refuses_a_threshold_that_is_no_number(bad):
    with pytest.raises(ConfigError, match="threshold"):
        fm.exceedance_frequency(xr.DataArray([1.0], dims="x"), threshold=bad)


def test_exceedance_frequency_mapping_needs_each_variable():
    ds = xr.Dataset({"a": ("x", [1.0]), "b": ("x", [1.0])})
    with pytest.raises(ConfigError, match=r"\['b'\]"):
        fm.exceedance_frequency(ds, threshold={"a": 0.5})
    with pytest.raises(ConfigError, match="Dataset"):
        fm.exceedance_frequency(ds["a"], threshold={"a": 0.5})


# ---------------------------------------------------------------------------------------------
# FSS: closed forms and hand vectors
# ---------------------------------------------------------------------------------------------
def test_fss_identical_fields_score_one_at_every_window():
    obs = _rain((3, 12, 10), seed=0)
    for window in (1, 2, 5, 10):
        assert float(fm.fss(obs, obs, threshold=0.5, window=window)) == 1.0


def test_fss_events_without_overlap_score_zero_at_grid_scale():
    obs = xr.DataArray(np.zeros((8, 8)), dims=("y", "x"))
    obs[2, 2] = obs[5, 6] = 3.0
    fcst = obs.roll(y=1)
    assert float(fm.fss(fcst, obs, threshold=1.0, window=1)) == 0.0
    # a window over the whole grid: the fractions are the event frequencies, equal here
    assert float(fm.fss(fcst, obs, threshold=1.0, window=8)) == 1.0


def test_fss_hand_vector_with_edges():
    # 6 x 6 grid, 3 x 3 boxes: 4 x 4 = 16 boxes wholly inside it. The truth's event at (1, 1)
    # lies in the 4 boxes starting at rows and columns 0..1; the forecast's at (1, 3) in the 6
    # boxes starting at rows 0..1, columns 1..3; 2 boxes (column 1) hold both.
    obs = xr.DataArray(np.zeros((6, 6)), dims=("y", "x"))
    obs[1, 1] = 1.0
    fcst = xr.zeros_like(obs)
    fcst[1, 3] = 1.0
    expected = 1 - (4 + 6 - 2 * 2) / (4 + 6)
    assert float(fm.fss(fcst, obs, threshold=1.0, window=3)) == pytest.approx(expected, abs=1e-15)
    # zero padding would have given the truth's event 9 boxes: not what is computed
    assert expected != pytest.approx(1 - (9 + 9 - 2 * 6) / 18)


def test_fss_pools_sums_over_samples_not_per_field_scores():
    obs = xr.DataArray(np.zeros((2, 4, 4)), dims=("time", "y", "x"))
    obs[0, 0, 0] = 1.0  # one event in the first field: forecast misses it
    obs[1] = 1.0  # every cell an event in the second: forecast right
    fcst = xr.zeros_like(obs)
    fcst[1] = 1.0
    per_time = fm.fss(fcst, obs, threshold=0.5, window=1, preserve_dims="time")
    np.testing.assert_array_equal(per_time.values, [0.0, 1.0])
    # pooled: 1 - 1 / (1 + 32) (not the mean of 0 and 1)
    assert float(fm.fss(fcst, obs, threshold=0.5, window=1)) == pytest.approx(1 - 1 / 33)


def test_fss_no_event_anywhere_is_undefined():
    zero = xr.DataArray(np.zeros((5, 5)), dims=("y", "x"))
    assert np.isnan(float(fm.fss(zero, zero, threshold=0.1, window=3)))


def test_fss_threshold_operator():
    obs = xr.DataArray(np.full((3, 3), 0.1), dims=("y", "x"))
    fcst = xr.DataArray(np.full((3, 3), 0.2), dims=("y", "x"))
    assert float(fm.fss(fcst, obs, threshold=0.1, window=1)) == 1.0  # both reach 0.1
    assert float(fm.fss(fcst, obs, threshold=0.1, window=1, inclusive=False)) == 0.0


# ---------------------------------------------------------------------------------------------
# FSS against scores.spatial.fss_2d
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("window", [1, 2, 3, 6, 9])
def test_fss_agrees_with_scores(window):
    fcst, obs = _rain((4, 15, 11), seed=1), _rain((4, 15, 11), seed=2)
    ours = fm.fss(fcst, obs, threshold=0.4, window=window, preserve_dims="time")
    theirs = _scores_fss(fcst, obs, 0.4, window, preserve_dims="time")
    np.testing.assert_allclose(ours.values, theirs.values, rtol=0, atol=1e-12)
    pooled = fm.fss(fcst, obs, threshold=0.4, window=window)
    theirs = _scores_fss(fcst, obs, 0.4, window, reduce_dims="time")
    assert float(pooled) == pytest.approx(float(theirs), abs=1e-12)


def test_fss_of_members_is_scores_over_members_as_samples():
    ens, obs = _rain((3, 2, 12, 12), seed=3), _rain((2, 12, 12), seed=4)
    ours = fm.fss(ens, obs, threshold=0.3, window=5)
    theirs = _scores_fss(ens, obs.broadcast_like(ens), 0.3, 5, reduce_dims=["member", "time"])
    assert float(ours) == pytest.approx(float(theirs), abs=1e-12)
    each = fm.fss(ens, obs, threshold=0.3, window=5, preserve_dims="member")
    for m in range(3):
        one = _scores_fss(ens.isel(member=m), obs, 0.3, 5, reduce_dims="time")
        assert float(each.isel(member=m)) == pytest.approx(float(one), abs=1e-12)


# ---------------------------------------------------------------------------------------------
# FSS: the ensemble convention, NaN, weights, units, dask, errors
# ---------------------------------------------------------------------------------------------
def test_fss_ensemble_probability_hand_vector():
    # two members, 1 x 2 grid, window 1: member events [1, 0] and [1, 1], probabilities
    # [1, 0.5] against the truth's events [1, 0]: 1 - 0.25 / (1 + 0.25 + 1)
    ens = xr.DataArray([[[1.0, 0.0]], [[1.0, 1.0]]], dims=("member", "y", "x"))
    obs = xr.DataArray([[1.0, 0.0]], dims=("y", "x"))
    out = fm.fss(ens, obs, threshold=0.5, window=1, member_dim="member")
    assert float(out) == pytest.approx(1 - 0.25 / 2.25)
    # the members as samples: 1 - (0 + 1) / ((1 + 1) + (2 + 1))
    assert float(fm.fss(ens, obs, threshold=0.5, window=1)) == pytest.approx(1 - 1 / 5)


def test_fss_ensemble_probability_equals_the_fraction_over_members_and_box():
    ens, obs = _rain((4, 2, 10, 9), seed=5), _rain((2, 10, 9), seed=6)
    out = fm.fss(ens, obs, threshold=0.3, window=3, member_dim="member")
    # by hand: the share of events over the 4 members x 9 cells of each box
    e, o = (ens.values >= 0.3).astype(float), (obs.values >= 0.3).astype(float)
    pf = np.zeros((2, 8, 7))
    po = np.zeros((2, 8, 7))
    for i in range(8):
        for j in range(7):
            pf[:, i, j] = e[:, :, i : i + 3, j : j + 3].mean(axis=(0, 2, 3))
            po[:, i, j] = o[:, i : i + 3, j : j + 3].mean(axis=(1, 2))
    expected = 1 - ((pf - po) ** 2).sum() / (pf**2 + po**2).sum()
    assert float(out) == pytest.approx(expected, abs=1e-12)


def test_fss_leaves_out_boxes_with_a_nan_cell():
    fcst, obs = _rain((1, 12, 12), seed=7), _rain((1, 12, 12), seed=8, nan_cells=3)
    out = fm.fss(fcst, obs, threshold=0.3, window=4)
    e = (fcst.values[0] >= 0.3).astype(float)
    o = np.where(np.isnan(obs.values[0]), np.nan, obs.values[0] >= 0.3)
    num = den = 0.0
    for i in range(9):
        for j in range(9):
            po = o[i : i + 4, j : j + 4].mean()
            if np.isnan(po):
                continue
            pf = e[i : i + 4, j : j + 4].mean()
            num += (pf - po) ** 2
            den += pf**2 + po**2
    assert float(out) == pytest.approx(1 - num / den, abs=1e-12)
    assert np.isnan(float(fm.fss(fcst, obs, threshold=0.3, window=4, skipna=False)))


def test_fss_box_weights_are_the_mean_of_the_cells_weights():
    obs = _rain((6, 5), seed=9).rename(y="lat", x="lon")
    fcst = _rain((6, 5), seed=10).rename(y="lat", x="lon")
    lat = np.linspace(0.0, 50.0, 6)
    obs, fcst = (a.assign_coords(lat=lat, lon=np.arange(5.0)) for a in (obs, fcst))
    w = xr.DataArray(np.cos(np.deg2rad(lat)), dims="lat", coords={"lat": lat})
    out = fm.fss(fcst, obs, threshold=0.3, window=2, weights=w)
    e, o = (a.values >= 0.3 for a in (fcst, obs))
    num = den = 0.0
    for i in range(5):
        for j in range(4):
            wb = w.values[i : i + 2].mean()
            pf, po = e[i : i + 2, j : j + 2].mean(), o[i : i + 2, j : j + 2].mean()
            num += wb * (pf - po) ** 2
            den += wb * (pf**2 + po**2)
    assert float(out) == pytest.approx(1 - num / den, abs=1e-12)


def test_fss_units_must_agree():
    obs = _rain((5, 5), seed=11)
    with pytest.raises(UnitsError):
        fm.fss(obs.assign_attrs(units="m"), obs, threshold=0.1, window=2)


def test_fss_datasets_take_a_threshold_per_variable():
    a, b = _rain((6, 6), seed=12), _rain((6, 6), seed=13)
    fcst = xr.Dataset({"p": a, "q": 100 * a})
    obs = xr.Dataset({"p": b, "q": 100 * b})
    out = fm.fss(fcst, obs, threshold={"p": 0.3, "q": 30.0}, window=3)
    assert float(out["p"]) == pytest.approx(float(out["q"]))
    assert float(out["p"]) == pytest.approx(float(fm.fss(a, b, threshold=0.3, window=3)))


def test_fss_and_frequency_stay_lazy():
    fcst = _rain((3, 4, 10, 10), seed=14).chunk({"time": 1})
    obs = _rain((4, 10, 10), seed=15).chunk({"time": 2})
    with dask.config.set(scheduler=raising_scheduler):
        lazy = fm.fss(fcst, obs, threshold=0.3, window=3, member_dim="member")
        freq = fm.exceedance_frequency(fcst, threshold=0.3, preserve_dims="member")
    assert float(lazy.compute(scheduler="sync")) == pytest.approx(
        float(fm.fss(fcst.compute(), obs.compute(), threshold=0.3, window=3, member_dim="member"))
    )
    np.testing.assert_allclose(
        freq.compute(scheduler="sync").values,
        fm.exceedance_frequency(fcst.compute(), threshold=0.3, preserve_dims="member").values,
    )


def test_fss_errors_say_what_to_change():
    obs = _rain((5, 6), seed=16)
    with pytest.raises(ShapeError, match="window"):
        fm.fss(obs, obs, threshold=0.1, window=6)
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError, match="window"):
            fm.fss(obs, obs, threshold=0.1, window=bad)
    with pytest.raises(ShapeError, match=r"chunk\(\{'x': -1\}\)"):
        fm.fss(obs.chunk({"x": 3}), obs, threshold=0.1, window=2)
    ens = obs.expand_dims(member=2)
    w = xr.DataArray([1.0, 1.0], dims="member")
    with pytest.raises(WeightsError, match="member"):
        fm.fss(ens, obs, threshold=0.1, window=2, member_dim="member", weights=w)
