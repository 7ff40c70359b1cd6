"""Deterministic scores: hand vectors, cross-checks with scores / xskillscore / scipy, closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import scores.continuous as sc
import xarray as xr
import xskillscore as xs
from metrics_helpers import grid_field
from scipy import ndimage

from flexdownscale.metrics import bias, mae, mse, pearson_r, psnr, rfne, rmse, ssim

CASES = [
    # (shape, dims, reduce_dims, weighted)
    ((40,), ("time",), None, False),
    ((6, 7, 9), ("time", "lat", "lon"), None, True),
    ((6, 7, 9), ("time", "lat", "lon"), ["lat", "lon"], True),
    ((3, 5, 4, 6), ("time", "level", "lat", "lon"), ["time", "lon"], True),
]


def _weights(da: xr.DataArray) -> xr.DataArray | None:
    if "lat" not in da.dims:
        return None
    return np.cos(np.deg2rad(da["lat"])) + 0.1


# ----------------------------------------------------------------------------------------------
# hand vectors from the scores test-suite (METRICS.md)
# ----------------------------------------------------------------------------------------------
def test_mse_and_rmse_hand_vectors():
    f = xr.DataArray([1.0, 3, 1, 3, 2, 2, 2, 1, 1, 2, 3], dims="t")
    o = xr.DataArray([1.0, 1, 1, 2, 1, 2, 1, 1, 1, 3, 1], dims="t")
    assert float(mse(f, o)) == pytest.approx(12 / 11, abs=1e-12)
    assert round(float(mse(f, o)), 4) == 1.0909
    f2 = xr.DataArray([-1.0, 3, 1, 3, 0, 2, 2, 1, 1, 2, 3], dims="t")
    o2 = xr.DataArray([1.0, 1, 1, 2, 1, 2, 1, -1, 1, 3, 1], dims="t")
    assert round(float(rmse(f2, o2)), 4) == 1.3484
    f2[4] = np.nan
    assert round(float(rmse(f2, o2)), 4) == 1.3784
    assert np.isnan(float(rmse(f2, o2, skipna=False)))


# ----------------------------------------------------------------------------------------------
# cross-checks on random inputs with NaNs
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("shape", "dims", "reduce_dims", "weighted"), CASES)
def test_cross_check_with_scores(shape, dims, reduce_dims, weighted):
    f = grid_field(shape, dims, seed=1, nan_frac=0.1)
    o = grid_field(shape, dims, seed=2, nan_frac=0.1, offset=0.3)
    w = _weights(f) if weighted else None
    for ours, theirs in [
        (mse, sc.mse),
        (rmse, sc.rmse),
        (mae, sc.mae),
        (bias, sc.additive_bias),
    ]:
        a = ours(f, o, reduce_dims=reduce_dims, weights=w)
        b = theirs(f, o, reduce_dims=reduce_dims, weights=w)
        xr.testing.assert_allclose(a.drop_attrs(), b.drop_attrs(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("shape", "dims", "reduce_dims", "weighted"), CASES)
def test_cross_check_with_xskillscore(shape, dims, reduce_dims, weighted):
    f = grid_field(shape, dims, seed=3, nan_frac=0.1)
    o = grid_field(shape, dims, seed=4, nan_frac=0.1, offset=-0.2)
    dim = list(dims) if reduce_dims is None else reduce_dims
    # xskillscore wants weights over exactly the reduced dims (so none when lat is kept)
    w = _weights(f) if weighted and "lat" in dim else None
    # weights over exactly the reduced dims
    template = f.isel({d: 0 for d in f.dims if d not in dim}, drop=True)
    wb = None if w is None else w.broadcast_like(template)
    for ours, theirs in [(rmse, xs.rmse), (mae, xs.mae), (bias, xs.me), (pearson_r, xs.pearson_r)]:
        a = ours(f, o, reduce_dims=reduce_dims, weights=w)
        b = theirs(f, o, dim=dim, weights=wb, skipna=True)
        np.testing.assert_allclose(a.transpose(*b.dims).values, b.values, rtol=1e-10, atol=1e-12)


def test_pearson_matches_scipy_and_preserve_dims():
    f = grid_field((5, 30), ("time", "x"), seed=5)
    o = 0.6 * f + grid_field((5, 30), ("time", "x"), seed=6)
    r = pearson_r(f, o, preserve_dims="time")
    assert r.dims == ("time",)
    for t in range(5):
        expected = scipy.stats.pearsonr(f.values[t], o.values[t]).statistic
        assert float(r[t]) == pytest.approx(expected, abs=1e-12)
    assert float(pearson_r(f, f)) == pytest.approx(1.0, abs=1e-12)
    assert float(pearson_r(f, -2 * f + 1)) == pytest.approx(-1.0, abs=1e-12)


def test_weights_change_the_answer_as_expected():
    # all weight on one latitude row = the score of that row alone
    f = grid_field((4, 5, 6), ("time", "lat", "lon"), seed=7)
    o = grid_field((4, 5, 6), ("time", "lat", "lon"), seed=8)
    w = xr.DataArray([0.0, 0, 1, 0, 0], dims="lat", coords={"lat": f.lat})
    np.testing.assert_allclose(
        float(rmse(f, o, weights=w)), float(rmse(f.isel(lat=2), o.isel(lat=2))), rtol=1e-12
    )


def test_rmse_is_root_of_pooled_mse_not_mean_of_roots():
    f = grid_field((3, 20), ("time", "x"), seed=9)
    o = f.copy(data=np.zeros((3, 20)))
    f = f * xr.DataArray([1.0, 2.0, 5.0], dims="time")
    pooled = np.sqrt(np.mean(f.values**2))
    assert float(rmse(f, o)) == pytest.approx(pooled, rel=1e-12)
    assert float(rmse(f, o)) != pytest.approx(float(rmse(f, o, preserve_dims="time").mean()))


# ----------------------------------------------------------------------------------------------
# RFNE, PSNR, SSIM
# ----------------------------------------------------------------------------------------------
def test_rfne_per_sample_then_mean():
    o = grid_field((4, 8, 9), ("time", "lat", "lon"), seed=10, offset=2.0)
    eps = xr.DataArray([0.1, -0.2, 0.05, 0.4], dims="time", coords={"time": o.time})
    amp = xr.DataArray([1.0, 10.0, 0.1, 3.0], dims="time", coords={"time": o.time})
    o = o * amp
    f = (1 + eps) * o
    assert float(rfne(f, o)) == pytest.approx(float(abs(eps).mean()), rel=1e-12)
    per = rfne(f, o, preserve_dims="time")
    np.testing.assert_allclose(per.values, np.abs(eps.values), rtol=1e-12)
    pooled = np.sqrt(((f - o) ** 2).sum() / (o**2).sum())
    assert abs(float(rfne(f, o)) - float(pooled)) > 1e-3  # the conventions differ
    # weights enter the norms
    w = np.cos(np.deg2rad(o.lat))
    num = np.sqrt((w * (f - o) ** 2).sum(("lat", "lon")))
    den = np.sqrt((w * o**2).sum(("lat", "lon")))
    assert float(rfne(f, o, weights=w)) == pytest.approx(float((num / den).mean()), rel=1e-12)
    assert rfne(f, o).attrs["units"] == "1"


def test_rfne_of_an_all_zero_truth_is_nan_not_inf():
    # a dry day: no relative error exists; it must not make the average infinite
    o = grid_field((3, 8, 9), ("time", "lat", "lon"), seed=12, offset=2.0)
    o[1] = 0.0
    f = 1.1 * o + 0.01
    per = rfne(f, o, preserve_dims="time")
    assert np.isnan(per.values[1])
    np.testing.assert_allclose(
        per.values[[0, 2]],
        rfne(f.isel(time=[0, 2]), o.isel(time=[0, 2]), preserve_dims="time").values,
    )
    assert float(rfne(f, o)) == pytest.approx(float(per.values[[0, 2]].mean()), rel=1e-12)
    assert np.isnan(float(rfne(f, o, skipna=False)))
    assert np.isnan(float(rfne(o, o, preserve_dims="time")[1]))  # 0 / 0 as well


def test_psnr_closed_form():
    o = grid_field((10, 10), ("lat", "lon"), seed=11) * 0
    f = o + 0.5
    assert float(psnr(f, o, data_range=50.0)) == pytest.approx(20 * np.log10(50 / 0.5), rel=1e-12)
    assert np.isinf(float(psnr(o, o, data_range=1.0)))
    assert psnr(f, o, data_range=1.0).attrs["units"] == "dB"


def _ssim_reference(f: np.ndarray, o: np.ndarray, data_range: float, window: str) -> float:
    """Naive SSIM: explicit window weights and a loop over the valid window positions."""
    if window == "gaussian":
        r = 5
        g = np.exp(-0.5 * (np.arange(-r, r + 1) / 1.5) ** 2)
        g = g / g.sum()
        kern = np.outer(g, g)
    else:
        r = 3
        kern = np.full((7, 7), 1 / 49)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for i in range(r, f.shape[0] - r):
        for j in range(r, f.shape[1] - r):
            a = f[i - r : i + r + 1, j - r : j + r + 1]
            b = o[i - r : i + r + 1, j - r : j + r + 1]
            ma, mb = (kern * a).sum(), (kern * b).sum()
            va = (kern * (a - ma) ** 2).sum()
            vb = (kern * (b - mb) ** 2).sum()
            cov = (kern * (a - ma) * (b - mb)).sum()
            vals.append(
                ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
            )
    return float(np.mean(vals))


@pytest.mark.parametrize("window", ["gaussian", "uniform"])
def test_ssim_against_naive_reference(window):
    o = grid_field((2, 20, 22), ("time", "lat", "lon"), seed=12)
    o = o.copy(data=ndimage.gaussian_filter(o.values, (0, 2, 2)) * 5)
    f = o + 0.3 * grid_field((2, 20, 22), ("time", "lat", "lon"), seed=13)
    got = ssim(f, o, data_range=4.0, window=window, preserve_dims="time")
    for t in range(2):
        ref = _ssim_reference(f.values[t], o.values[t], 4.0, window)
        assert float(got[t]) == pytest.approx(ref, rel=1e-10)
    assert float(ssim(o, o, data_range=4.0)) == pytest.approx(1.0, abs=1e-12)
    noisier = ssim(o + 3 * (f - o), o, data_range=4.0)
    assert float(noisier) < float(got.mean())


def test_ssim_constant_fields_closed_form():
    a = grid_field((16, 16), ("lat", "lon"), seed=0) * 0 + 2.0
    b = a * 0 + 3.0
    c1 = (0.01 * 10.0) ** 2
    expected = (2 * 2 * 3 + c1) / (4 + 9 + c1)
    assert float(ssim(a, b, data_range=10.0)) == pytest.approx(expected, rel=1e-12)
    assert float(ssim(a, b, data_range=10.0)) == pytest.approx(float(ssim(b, a, data_range=10.0)))


def test_units_and_datasets():
    f = grid_field((4, 5, 6), ("time", "lat", "lon"), seed=14)
    o = grid_field((4, 5, 6), ("time", "lat", "lon"), seed=15)
    assert rmse(f, o).attrs["units"] == "K"
    assert mse(f, o).attrs["units"] == "K^2"
    assert pearson_r(f, o).attrs["units"] == "1"
    u = f.copy()
    u.attrs["units"] = "m s-1"
    assert mse(u, o.assign_attrs(units="m s-1")).attrs["units"] == "(m s-1)^2"
    fd = xr.Dataset({"t2m": f, "u": u})
    od = xr.Dataset({"t2m": o, "u": o.assign_attrs(units="m s-1")})
    out = rmse(fd, od, preserve_dims="time")
    assert set(out.data_vars) == {"t2m", "u"}
    xr.testing.assert_allclose(out["t2m"], rmse(f, o, preserve_dims="time"))
    assert out["u"].attrs["units"] == "m s-1"


def test_weighted_dataset_whose_variables_have_different_dims():
    f = grid_field((4, 5, 6), ("time", "lat", "lon"), seed=16)
    o = grid_field((4, 5, 6), ("time", "lat", "lon"), seed=17)
    fd = xr.Dataset({"t2m": f, "orog": f.isel(time=0, drop=True)})
    od = xr.Dataset({"t2m": o, "orog": o.isel(time=0, drop=True)})
    w = np.cos(np.deg2rad(f.lat))
    out = rmse(fd, od, weights=w)
    for name in fd.data_vars:  # each variable as if scored alone
        xr.testing.assert_allclose(out[name], rmse(fd[name], od[name], weights=w))
    # weights over a dim a variable lacks: its constant score averaged over that dim
    wt = w * xr.DataArray(np.arange(1.0, 5.0), dims="time")
    out = rmse(fd, od, weights=wt)
    broadcast = rmse(fd["orog"].broadcast_like(f), od["orog"].broadcast_like(o), weights=wt)
    xr.testing.assert_allclose(out["orog"], broadcast)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64, bool])
def test_integer_and_boolean_inputs_score_as_their_values(dtype):
    """uint8 images and int16 counts: the differences and squares are taken in floating point
    (in the input's type they wrapped around: uint8 mse 54.25 for 18806.25)."""
    rng = np.random.default_rng(3)
    high = 2 if dtype is bool else 250
    f = xr.DataArray(rng.integers(0, high, size=(6, 7)).astype(dtype), dims=("y", "x"))
    o = xr.DataArray(rng.integers(0, high, size=(6, 7)).astype(dtype), dims=("y", "x"))
    fl, ol = f.astype(np.float64), o.astype(np.float64)
    for score in (mse, rmse, mae, bias, rfne):
        np.testing.assert_allclose(score(f, o).values, score(fl, ol).values, rtol=1e-12)
    np.testing.assert_allclose(
        psnr(f, o, data_range=255).values, psnr(fl, ol, data_range=255).values, rtol=1e-12
    )
    np.testing.assert_allclose(
        ssim(f, o, data_range=255, win_size=5).values,
        ssim(fl, ol, data_range=255, win_size=5).values,
        rtol=1e-12,
    )
    ds = xr.Dataset({"a": f, "b": fl})
    np.testing.assert_allclose(mse(ds, ds * 0)["a"].values, float((fl**2).mean()), rtol=1e-12)
