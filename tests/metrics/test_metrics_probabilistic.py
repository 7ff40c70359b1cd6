"""Ensemble scores: hand vectors, closed forms, cross-checks with properscoring and scores."""

from __future__ import annotations

import numpy as np
import properscoring
import pytest
import scores.probability as sp
import xarray as xr
from scipy.stats import norm

from flexdownscale.errors import EnsembleError, UndefinedMetricWarning
from flexdownscale.metrics import (
    crps_ensemble,
    ensemble_mean,
    ensemble_spread,
    rank_histogram,
    spread_skill_ratio,
)

HAND_FCST = np.array(
    [[0, 4, 3, 7], [1, -1, 2, 4], [0, 1, 4, np.nan], [2, 3, 4, 1], [2, np.nan, np.nan, np.nan]],
    dtype=float,
)
HAND_OBS = np.array([2, 3, 1, np.nan, 4], dtype=float)


def _ens(values: np.ndarray, dims=("point", "member")) -> xr.DataArray:
    return xr.DataArray(values, dims=dims, attrs={"units": "K"})


def _random_ensemble(shape, m, seed, nan_frac=0.1):
    """fcst (member, *shape) and obs (*shape) with NaN members, NaN obs and all-NaN ensembles."""
    rng = np.random.default_rng(seed)
    dims = ("time", "lat", "lon")[: len(shape)]
    x = rng.normal(size=(m, *shape)) * rng.uniform(0.5, 2.0, size=shape) + 0.3
    y = rng.normal(size=shape)
    x[rng.random(x.shape) < nan_frac] = np.nan
    y[rng.random(y.shape) < nan_frac] = np.nan
    x[(slice(None),) + (0,) * len(shape)] = np.nan  # one point with no member at all
    coords = {d: np.arange(n, dtype=float) for d, n in zip(dims, shape)}
    fcst = xr.DataArray(x, dims=("member", *dims), coords=coords)
    obs = xr.DataArray(y, dims=dims, coords=coords)
    return fcst, obs


def _naive_crps(x: np.ndarray, y: float, fair: bool) -> float:
    """O(M^2) definition, NaN members dropped."""
    x = x[~np.isnan(x)]
    m = x.size
    k = m * (m - 1) if fair else m * m
    if m == 0 or k == 0 or np.isnan(y):
        return np.nan
    return np.abs(x - y).mean() - np.abs(x[:, None] - x[None, :]).sum() / (2 * k)


# ----------------------------------------------------------------------------------------------
# CRPS
# ----------------------------------------------------------------------------------------------
def test_crps_hand_vectors():
    f, o = _ens(HAND_FCST), xr.DataArray(HAND_OBS, dims="point")
    ecdf = crps_ensemble(f, o, fair=False, preserve_dims="point")
    np.testing.assert_allclose(ecdf.values, [1.125, 1.0, 4 / 9, np.nan, 2.0], rtol=1e-12)
    with pytest.warns(UndefinedMetricWarning, match="only one ensemble member"):
        fair = crps_ensemble(f, o, fair=True, preserve_dims="point")
    np.testing.assert_allclose(fair.values, [2 / 3, 2 / 3, 0.0, np.nan, np.nan], atol=1e-12)
    assert ecdf.attrs["units"] == "K"
    assert fair.attrs["crps_method"] == "fair"


@pytest.mark.parametrize(
    ("obs", "members", "expected"),
    [
        (0.0, [0, 1], 0.25),
        (0.0, [0, 0, 1], 1 / 9),
        (1.0, [0, 0, 1], 4 / 9),
        (0.0, [-1, 0, 0, 1], 1 / 8),
    ],
)
def test_crps_properscoring_toy_vectors(obs, members, expected):
    f = xr.DataArray(np.asarray(members, float), dims="member")
    assert float(crps_ensemble(f, xr.DataArray(obs), fair=False)) == pytest.approx(
        expected, abs=1e-15
    )
    assert properscoring.crps_ensemble(obs, members) == pytest.approx(expected)


def test_crps_gaussian_closed_form():
    m = 1000
    members = norm.ppf((np.arange(1, m + 1) - 0.5) / m)
    f = xr.DataArray(members, dims="member")
    exact = 0.2336949773  # CRPS(N(0, 1), 0) = (sqrt(2) - 1) / sqrt(pi)
    assert (np.sqrt(2) - 1) / np.sqrt(np.pi) == pytest.approx(exact, abs=1e-10)
    assert float(crps_ensemble(f, xr.DataArray(0.0), fair=False)) == pytest.approx(exact, abs=1e-5)
    assert float(crps_ensemble(f, xr.DataArray(0.0), fair=True)) == pytest.approx(exact, abs=1e-3)


@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")
@pytest.mark.parametrize(("shape", "m"), [((50,), 2), ((7, 9), 5), ((3, 4, 6), 17)])
def test_crps_matches_properscoring(shape, m):
    fcst, obs = _random_ensemble(shape, m, seed=m)
    ours = crps_ensemble(fcst, obs, fair=False, preserve_dims="all")
    theirs = properscoring.crps_ensemble(obs.values, fcst.values, axis=0)
    np.testing.assert_allclose(ours.values, theirs, rtol=1e-10, atol=1e-12)
    # member weights: CRPS of the weighted ECDF
    rng = np.random.default_rng(m)
    w = rng.uniform(0.1, 2.0, size=m)
    ours_w = crps_ensemble(fcst, obs, fair=False, member_weights=w, preserve_dims="all")
    theirs_w = properscoring.crps_ensemble(
        obs.values,
        fcst.values,
        weights=np.broadcast_to(w.reshape((m,) + (1,) * len(shape)), fcst.shape),
        axis=0,
    )
    np.testing.assert_allclose(ours_w.values, theirs_w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fair", [False, True])
@pytest.mark.parametrize(
    ("shape", "m", "preserve"),
    [((40,), 3, None), ((6, 8), 8, "time"), ((2, 5, 7), 30, ["time", "lat"])],
)
def test_crps_matches_scores(shape, m, preserve, fair):
    fcst, obs = _random_ensemble(shape, m, seed=10 + m)
    if fair:  # points with exactly one valid member are NaN + warning in both conventions' spirit
        fcst = fcst.where(fcst.count("member") != 1, 0.0)
    weights = None
    if "lat" in obs.dims:
        weights = np.cos(np.deg2rad(obs.lat * 5.0))
    method = "fair" if fair else "ecdf"
    ours = crps_ensemble(
        fcst, obs, fair=fair, preserve_dims=preserve, weights=weights, include_components=True
    )
    theirs = sp.crps_for_ensemble(
        fcst,
        obs,
        "member",
        method=method,
        preserve_dims=preserve,
        weights=weights,
        include_components=True,
    )
    np.testing.assert_allclose(
        ours.transpose("component", ...).values,
        theirs.transpose("component", *ours.transpose("component", ...).dims[1:]).values,
        rtol=1e-10,
        atol=1e-12,
    )
    assert list(ours.component.values) == ["total", "underforecast", "overforecast", "spread"]


def test_crps_sort_identity_against_naive_definition():
    fcst, obs = _random_ensemble((200,), 9, seed=3, nan_frac=0.2)
    fcst[1:, 5] = np.nan  # point 5 keeps exactly one member
    fcst[0, 5] = 0.5
    for fair in (False, True):
        with pytest.warns(UndefinedMetricWarning) if fair else _nullcontext():
            ours = crps_ensemble(fcst, obs, fair=fair, preserve_dims="all").values
        naive = [_naive_crps(fcst.values[:, i], obs.values[i], fair) for i in range(200)]
        np.testing.assert_allclose(ours, naive, rtol=1e-10, atol=1e-12)


def test_crps_components_add_up_and_deterministic_limit():
    fcst, obs = _random_ensemble((30, 4), 6, seed=4, nan_frac=0.0)
    comp = crps_ensemble(fcst, obs, include_components=True, preserve_dims="all")
    total = (
        comp.sel(component="underforecast")
        + comp.sel(component="overforecast")
        - comp.sel(component="spread")
    )
    xr.testing.assert_allclose(total.drop_vars("component"), comp.sel(component="total", drop=True))
    # ... also after averaging over points where the fair CRPS is undefined (one valid member):
    # every component is NaN there, so all four average over the same points
    with pytest.warns(UndefinedMetricWarning, match="one ensemble member is valid"):
        mean = crps_ensemble(
            _ens(np.array([[0.0, 1.0], [2.0, np.nan]])),
            xr.DataArray([0.5, 0.0], dims="point"),
            include_components=True,
        )
    np.testing.assert_allclose(mean.values, [0.0, 0.25, 0.25, 0.5])
    # one member, ecdf: |x - y|
    one = fcst.isel(member=[0])
    np.testing.assert_allclose(
        crps_ensemble(one, obs, fair=False, preserve_dims="all").values,
        np.abs(one.values[0] - obs.values),
        rtol=1e-12,
    )
    # equal member weights change nothing, for both forms
    for fair in (False, True):
        a = crps_ensemble(fcst, obs, fair=fair, preserve_dims="all")
        b = crps_ensemble(fcst, obs, fair=fair, member_weights=np.full(6, 3.0), preserve_dims="all")
        xr.testing.assert_allclose(a, b)
    # a member with weight 0 is the same as dropping it (ecdf)
    w = np.array([1.0, 1, 1, 1, 1, 0])
    xr.testing.assert_allclose(
        crps_ensemble(fcst, obs, fair=False, member_weights=w, preserve_dims="all"),
        crps_ensemble(fcst.isel(member=slice(0, 5)), obs, fair=False, preserve_dims="all"),
    )


def test_fair_crps_is_unbiased_for_exchangeable_members():
    # E[fair CRPS of M members] = CRPS of the parent distribution (here N(0, 1) vs obs 0)
    rng = np.random.default_rng(5)
    fcst = xr.DataArray(rng.normal(size=(4, 20000)), dims=("member", "point"))
    obs = xr.DataArray(np.zeros(20000), dims="point")
    exact = (np.sqrt(2) - 1) / np.sqrt(np.pi)
    assert float(crps_ensemble(fcst, obs, fair=True)) == pytest.approx(exact, abs=0.01)
    assert float(crps_ensemble(fcst, obs, fair=False)) > exact + 0.03  # ecdf penalises M = 4


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


# ----------------------------------------------------------------------------------------------
# spread-skill
# ----------------------------------------------------------------------------------------------
def _exchangeable(m, n, seed, spread_scale=1.0):
    rng = np.random.default_rng(seed)
    centre = rng.normal(scale=3.0, size=n)  # the predictable part varies from point to point
    obs = centre + rng.normal(size=n)
    fcst = centre + spread_scale * rng.normal(size=(m, n))
    return xr.DataArray(fcst, dims=("member", "point")), xr.DataArray(obs, dims="point")


@pytest.mark.parametrize("m", [3, 10])
def test_spread_skill_exchangeable_ensemble(m):
    fcst, obs = _exchangeable(m, 200_000, seed=m)
    # sampling error of the ratio here is ~ 0.3 %; allow 2 %
    assert float(spread_skill_ratio(fcst, obs, correction="fortin")) == pytest.approx(1.0, abs=0.02)
    assert float(spread_skill_ratio(fcst, obs, correction="unbiased")) == pytest.approx(
        1.0, abs=0.02
    )
    raw = float(spread_skill_ratio(fcst, obs, correction=None))
    assert raw == pytest.approx(np.sqrt(m / (m + 1)), abs=0.02)
    if m == 10:
        assert raw == pytest.approx(0.954, abs=0.01)


def test_spread_skill_dispersion_and_components():
    over, obs = _exchangeable(10, 50_000, seed=1, spread_scale=2.0)
    under, _ = _exchangeable(10, 50_000, seed=1, spread_scale=0.5)
    assert float(spread_skill_ratio(over, obs)) > 1.2
    assert float(spread_skill_ratio(under, obs)) < 0.8
    comp = spread_skill_ratio(over, obs, correction=None, include_components=True)
    spread = np.sqrt(over.var("member", ddof=1).mean())
    skill = np.sqrt(((over.mean("member") - obs) ** 2).mean())
    np.testing.assert_allclose(comp.sel(component="spread"), spread, rtol=1e-12)
    np.testing.assert_allclose(comp.sel(component="skill"), skill, rtol=1e-12)
    np.testing.assert_allclose(comp.sel(component="ratio"), spread / skill, rtol=1e-12)


def test_spread_skill_weights_and_nan_points():
    fcst, obs = _random_ensemble((12, 9), 6, seed=7, nan_frac=0.05)
    w = xr.DataArray(np.linspace(0.1, 1.0, 9), dims="lat", coords={"lat": obs.lat})
    got = float(spread_skill_ratio(fcst, obs, correction=None, weights=w))
    var = fcst.var("member", ddof=1).values
    err = (fcst.mean("member") - obs).values ** 2
    ww = np.broadcast_to(w.values, var.shape)
    ok = np.isfinite(var) & np.isfinite(err)
    expected = np.sqrt((ww[ok] * var[ok]).sum() / (ww[ok] * err[ok]).sum())
    assert got == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------------------------
# rank histogram and helpers
# ----------------------------------------------------------------------------------------------
def test_rank_histogram_matches_scores_with_ties_and_weights():
    rng = np.random.default_rng(8)
    fcst = xr.DataArray(
        rng.integers(0, 4, size=(5, 30, 8)).astype(float), dims=("member", "time", "lat")
    )
    obs = xr.DataArray(rng.integers(0, 4, size=(30, 8)).astype(float), dims=("time", "lat"))
    w = xr.DataArray(rng.uniform(0.5, 1.5, size=8), dims="lat")
    for kwargs in ({}, {"weights": w}, {"preserve_dims": "lat"}):
        ours = rank_histogram(fcst, obs, **kwargs)
        theirs = sp.rank_histogram(fcst, obs, "member", **kwargs)
        np.testing.assert_allclose(
            ours.transpose(*theirs.dims).values, theirs.values, rtol=1e-10, atol=1e-14
        )
    assert float(rank_histogram(fcst, obs).sum()) == pytest.approx(1.0)


def test_rank_histogram_extremes_and_flatness():
    rng = np.random.default_rng(9)
    fcst = xr.DataArray(rng.normal(size=(4, 1000)), dims=("member", "point"))
    low = rank_histogram(fcst, xr.DataArray(np.full(1000, -100.0), dims="point"))
    high = rank_histogram(fcst, xr.DataArray(np.full(1000, 100.0), dims="point"))
    np.testing.assert_array_equal(low.values, [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(high.values, [0, 0, 0, 0, 1])
    assert list(low["rank"].values) == [1, 2, 3, 4, 5]
    flat = rank_histogram(*_exchangeable(4, 50_000, seed=2))
    np.testing.assert_allclose(flat.values, 0.2, atol=0.01)
    # a NaN member removes the point (documented)
    f2 = fcst.copy()
    f2[0, :500] = np.nan
    xr.testing.assert_allclose(
        rank_histogram(f2, xr.DataArray(np.full(1000, -100.0), dims="point")), low
    )


def test_ensemble_mean_and_spread_helpers():
    fcst, _ = _random_ensemble((5, 6), 7, seed=11, nan_frac=0.0)
    fcst.attrs["units"] = "K"
    np.testing.assert_allclose(ensemble_mean(fcst).values, fcst.values.mean(0), rtol=1e-12)
    np.testing.assert_allclose(ensemble_spread(fcst).values, fcst.values.std(0, ddof=1), rtol=1e-12)
    assert ensemble_spread(fcst).attrs["units"] == "K"
    assert ensemble_mean(fcst.rename(member="ens"), member_dim="ens").dims == ("time", "lat")
    # one member: an all-NaN map without a word before (reviewer-49); refused as by
    # spread_skill_ratio. A point with one valid member among several is still NaN
    with pytest.raises(EnsembleError, match=r"at least 2 members, but 'member' has 1"):
        ensemble_spread(fcst.isel(member=slice(0, 1)))
    two = fcst.isel(member=slice(0, 2)).copy()
    two[1, 0, 0] = np.nan
    spread = ensemble_spread(two)
    assert np.isnan(spread[0, 0])
    assert np.isfinite(spread[0, 1])


def test_one_member_fair_crps_is_nan_with_a_warning_as_the_design_says():
    """METRICS.md: one member, ecdf = |y - x|, fair undefined (NaN + warning), as for an
    ensemble whose other members are NaN (it raised EnsembleError)."""
    fcst = xr.DataArray([[1.0], [2.0]], dims=("p", "member"))
    obs = xr.DataArray([0.0, 3.0], dims="p")
    with pytest.warns(UndefinedMetricWarning, match="undefined for one member"):
        fair = crps_ensemble(fcst, obs, fair=True, preserve_dims="p")
    assert np.isnan(fair.values).all()
    np.testing.assert_array_equal(
        crps_ensemble(fcst, obs, fair=False, preserve_dims="p").values, [1.0, 1.0]
    )


def test_a_dataset_variable_without_members_is_named():
    """A static field beside the ensemble: an EnsembleError naming it (crps and the rank
    histogram raised xarray's 'Missing core dims', spread-skill returned NaN for it)."""
    from flexdownscale.errors import EnsembleError

    rng = np.random.default_rng(0)
    fcst = xr.Dataset(
        {
            "t2m": (("member", "lat"), rng.normal(size=(4, 6))),
            "orog": ("lat", rng.normal(size=6)),
        }
    )
    obs = xr.Dataset({"t2m": ("lat", rng.normal(size=6)), "orog": ("lat", rng.normal(size=6))})
    for score in (crps_ensemble, spread_skill_ratio, rank_histogram):
        with pytest.raises(
            EnsembleError, match=r"\['orog'\] have no member dim.*fcst\[\['t2m'\]\]"
        ):
            score(fcst, obs)
    assert np.isfinite(float(crps_ensemble(fcst[["t2m"]], obs[["t2m"]])["t2m"]))


def test_spread_skill_reduces_every_dim_whatever_skipna():
    """obs with a time dim the ensemble lacks, weighted over time: one number with
    skipna=False too (the spread's weighted mean kept the weights' time dim)."""
    rng = np.random.default_rng(1)
    ens = xr.DataArray(rng.normal(size=(5, 8)), dims=("member", "lat"))
    obs = xr.DataArray(rng.normal(size=(3, 8)), dims=("time", "lat"))
    weights = xr.DataArray([1.0, 2.0, 3.0], dims="time")
    a = spread_skill_ratio(ens, obs, weights=weights, skipna=True)
    b = spread_skill_ratio(ens, obs, weights=weights, skipna=False)
    assert a.dims == b.dims == ()
    assert float(a) == pytest.approx(float(b), rel=1e-12)


def test_rank_histogram_takes_skipna_as_every_other_score():
    """METRICS.md: NaN handling is explicit (``skipna``, default True) in every score; the rank
    histogram alone had no ``skipna`` and always left NaN points out."""
    fcst = xr.DataArray(
        [[1.0, 2.0, 3.0, 1.0], [2.0, 3.0, 4.0, 2.0]], dims=("member", "x"), attrs={"units": "K"}
    )
    obs = xr.DataArray([0.0, 2.5, 5.0, np.nan], dims="x", attrs={"units": "K"})
    kept = rank_histogram(fcst, obs)
    np.testing.assert_allclose(kept.values, [1 / 3, 1 / 3, 1 / 3])
    assert rank_histogram(fcst, obs, skipna=True).identical(kept)  # the default
    assert np.isnan(rank_histogram(fcst, obs, skipna=False).values).all()
    per_point = rank_histogram(fcst, obs, preserve_dims="x", skipna=False)
    np.testing.assert_array_equal(per_point.isel(x=0).values, [1.0, 0.0, 0.0])
    assert np.isnan(per_point.isel(x=3).values).all()
    weights = xr.DataArray([1.0, 1.0, 2.0, 1.0], dims="x")
    np.testing.assert_allclose(rank_histogram(fcst, obs, weights=weights).values, [0.25, 0.25, 0.5])
    assert np.isnan(rank_histogram(fcst, obs, weights=weights, skipna=False).values).all()


def test_weighted_fair_crps_can_be_negative_as_documented():
    """The documented case (docs/metrics.md, crps_ensemble's member_weights): the weighted fair
    form's spread term over-corrects for unequal weights, the ecdf form stays >= 0."""
    fcst = xr.DataArray([10.0, 0.0], dims="member")
    obs = xr.DataArray(0.0)
    fair = crps_ensemble(fcst, obs, member_weights=[0.1, 0.9])
    ecdf = crps_ensemble(fcst, obs, member_weights=[0.1, 0.9], fair=False)
    assert float(fair) == pytest.approx(1.0 - 0.9 / 0.18)  # 1 - (0.5 * 1.8) / (1 - 0.82)
    assert float(fair) == pytest.approx(-4.0)
    assert float(ecdf) == pytest.approx(0.1)
    assert float(crps_ensemble(fcst, obs)) >= 0  # equal weights: never below zero
