"""The metrics' dtypes: half precision is scored in float32 (float16's sums of squares
overflowed: an RFNE of 0, a NaN correlation), ensemble means and member variances are summed in
float64, scores come back in float64, and packed integers (a file opened with
``mask_and_scale=False``) are refused as inference and training refuse them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import flexdownscale.metrics as fm
from flexdownscale.errors import DataError

M, T, Y, X = 8, 2, 32, 32
COORDS = {"y": np.arange(Y) * 1e3, "x": np.arange(X) * 1e3}


def _pair(dtype: str, *, offset: float = 280.0, spread: float = 1.0, members: int = M, seed=0):
    """An ensemble and a truth at ``offset`` (units K) stored in ``dtype``."""
    rng = np.random.default_rng(seed)
    truth = offset + spread * rng.normal(size=(T, Y, X))
    ens = truth + spread * rng.normal(size=(members, T, Y, X))
    attrs = {"units": "K"}
    obs = xr.DataArray(truth.astype(dtype), dims=("time", "y", "x"), coords=COORDS, attrs=attrs)
    fcst = xr.DataArray(
        ens.astype(dtype), dims=("member", "time", "y", "x"), coords=COORDS, attrs=attrs
    )
    return fcst, obs


def _reference(fcst: xr.DataArray, obs: xr.DataArray) -> dict[str, float]:
    """The scores in float64 numpy on the same (stored) values."""
    e = fcst.values.astype(np.float64)
    o = obs.values.astype(np.float64)
    mean = e.mean(0)
    err = mean - o
    norms = [np.linalg.norm(err[i]) / np.linalg.norm(o[i]) for i in range(o.shape[0])]
    var = e.var(0, ddof=1)
    m = e.shape[0]
    return {
        "mse": float((err**2).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "mae": float(np.abs(err).mean()),
        "bias": float(err.mean()),
        "rfne": float(np.mean(norms)),
        "pearson_r": float(np.corrcoef(mean.ravel(), o.ravel())[0, 1]),
        "spread_skill_ratio": float(np.sqrt((m + 1) / m * var.mean() / (err**2).mean())),
        "ensemble_spread": float(np.sqrt(var).mean()),
    }


def _scores(fcst: xr.DataArray, obs: xr.DataArray) -> dict[str, xr.DataArray]:
    mean = fm.ensemble_mean(fcst)
    return {
        "mse": fm.mse(mean, obs),
        "rmse": fm.rmse(mean, obs),
        "mae": fm.mae(mean, obs),
        "bias": fm.bias(mean, obs),
        "rfne": fm.rfne(mean, obs),
        "pearson_r": fm.pearson_r(mean, obs),
        "spread_skill_ratio": fm.spread_skill_ratio(fcst, obs),
        "ensemble_spread": fm.ensemble_spread(fcst).mean(),
    }


def test_float16_scores_agree_with_float64_on_the_same_values():
    fcst, obs = _pair("float16")
    ref = _reference(fcst, obs)
    got = _scores(fcst, obs)
    for name, value in got.items():
        assert float(value) == pytest.approx(ref[name], rel=1e-5), name
    # the mean of the float16 values, in float32 (float16 steps by 0.25 K at 280 K)
    mean = fm.ensemble_mean(fcst)
    assert mean.dtype == np.float32
    exact = fcst.values.astype(np.float64).mean(0)
    np.testing.assert_allclose(mean.values, exact, rtol=1e-7)


def test_float16_rfne_of_a_wrong_forecast_is_not_zero():
    _, obs = _pair("float16")
    assert float(fm.rfne(obs + np.float16(1), obs)) == pytest.approx(1 / 280, rel=2e-3)


def test_float16_dask_and_dataset_inputs():
    fcst, obs = _pair("float16")
    eager = float(fm.spread_skill_ratio(fcst, obs))
    lazy = fm.spread_skill_ratio(fcst.chunk({"time": 1}), obs.chunk({"time": 1}))
    assert lazy.chunks is not None  # still lazy
    assert float(lazy) == pytest.approx(eager, rel=1e-12)
    ds = fm.rmse(fm.ensemble_mean(fcst.to_dataset(name="t2m")), obs.to_dataset(name="t2m"))
    assert ds["t2m"].dtype == np.float64
    assert float(ds["t2m"]) == pytest.approx(float(fm.rmse(fm.ensemble_mean(fcst), obs)))


def test_large_offset_ensemble_summed_in_float64():
    """100 float32 members at 5e5: the float32 mean was off by up to 7 units in the last place
    (spread/skill 3.8e-4 too high); summed in float64 it agrees to 1e-6."""
    fcst, obs = _pair("float32", offset=5e5, spread=20.0, members=100, seed=1)
    ref = _reference(fcst, obs)
    assert float(fm.spread_skill_ratio(fcst, obs)) == pytest.approx(
        ref["spread_skill_ratio"], rel=1e-6
    )
    assert float(fm.ensemble_spread(fcst).mean()) == pytest.approx(ref["ensemble_spread"], rel=1e-6)
    # the float32 mean is the float64 mean rounded once (half a unit in the last place)
    exact = fcst.values.astype(np.float64).mean(0)
    mean = fm.ensemble_mean(fcst).values
    assert np.abs(mean - exact).max() <= 0.5 * np.spacing(np.float32(5.1e5))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int16"])
def test_output_dtypes(dtype):
    """Scores are float64 whatever the input; ensemble fields (mean, spread) float32 for half
    and single precision, float64 for double precision and integers."""
    fcst, obs = _pair(dtype, offset=100.0, spread=10.0)
    for name, value in _scores(fcst, obs).items():
        if name != "ensemble_spread":
            assert value.dtype == np.float64, name
    assert fm.crps_ensemble(fcst, obs).dtype == np.float64
    field = np.float32 if dtype in ("float16", "float32") else np.float64
    assert fm.ensemble_mean(fcst).dtype == field
    assert fm.ensemble_spread(fcst).dtype == field


def _packed_truth() -> xr.DataArray:
    """A truth as ``xr.open_dataset(..., mask_and_scale=False)`` gives it: int16 counts."""
    _, obs = _pair("float64")
    counts = np.round((obs.values - 280.0) / 0.0005).astype(np.int16)
    attrs = {"units": "K", "scale_factor": 0.0005, "add_offset": 280.0, "_FillValue": -32767}
    return obs.copy(data=counts).assign_attrs(attrs).rename("t2m")


@pytest.mark.parametrize(
    "score",
    [
        lambda f, o: fm.rmse(fm.ensemble_mean(f), o),
        lambda f, o: fm.rfne(fm.ensemble_mean(f), o),
        lambda f, o: fm.spread_skill_ratio(f, o),
        lambda f, o: fm.crps_ensemble(f, o),
        lambda f, o: fm.rank_histogram(f, o),
        lambda f, o: fm.downscaling_skill(f, o),
        lambda f, o: fm.power_spectrum(o),
    ],
    ids=["rmse", "rfne", "spread_skill", "crps", "rank_histogram", "skill", "spectrum"],
)
def test_packed_integers_are_refused(score):
    fcst, _ = _pair("float32")
    with pytest.raises(DataError, match=r"'t2m'.*scale_factor = 0\.0005.*xr\.decode_cf\(ds\)"):
        score(fcst, _packed_truth())


def test_packed_prediction_in_a_dataset_is_refused():
    truth = _packed_truth()
    pred = truth.to_dataset()
    with pytest.raises(DataError, match=r"add_offset = 280\.0"):
        fm.ensemble_mean(pred.expand_dims(member=2))
    decoded = xr.decode_cf(pred)
    assert float(fm.rmse(decoded, xr.decode_cf(truth.to_dataset()))["t2m"]) == 0.0


def test_neutral_packing_attrs_and_grids_pass():
    _, obs = _pair("float32")
    neutral = obs.assign_attrs(scale_factor=1.0, add_offset=0.0, _FillValue=np.nan)
    assert float(fm.rmse(neutral, obs)) == 0.0
    # area weights read the coordinates only: a packed file's grid is fine
    assert fm.area_weights(_packed_truth().to_dataset()).sizes["y"] == Y


def test_check_decoded_keeps_its_old_import():
    from flexdownscale._packing import check_decoded
    from flexdownscale.data.grid import check_decoded as old

    assert old is check_decoded


def test_evaluate_float16_prediction_as_float64(tmp_path):
    """evaluate's ensemble means follow the same rule: a float16 prediction file scores as the
    same values stored in float64 (RMSE was 4% and spread/skill 29% off)."""
    pytest.importorskip("zarr")
    from flexdownscale.evaluation import evaluate

    rng = np.random.default_rng(3)
    lat = np.arange(50.0, 50.0 + 0.25 * 24, 0.25)
    lon = np.arange(0.0, 0.25 * 24, 0.25)
    time = np.array(["2019-03-01T00", "2019-03-01T01", "2019-03-01T02"], dtype="datetime64[ns]")
    grid = {
        "time": time,
        "latitude": ("latitude", lat, {"units": "degrees_north"}),
        "longitude": ("longitude", lon, {"units": "degrees_east"}),
    }
    truth = 280 + rng.normal(size=(3, 24, 24))
    members = truth + 0.3 * rng.normal(size=(4, 3, 24, 24))
    dims = ("time", "latitude", "longitude")
    attrs = {"units": "K"}
    xr.Dataset({"t2m": (dims, truth, attrs)}, coords=grid).to_netcdf(tmp_path / "truth.nc")
    half = members.astype(np.float16)
    for dtype, name in ((np.float16, "pred16.zarr"), (np.float64, "pred64.zarr")):
        values = half.astype(dtype)
        pred = xr.Dataset({"t2m": (("member", *dims), values, attrs)}, coords=grid)
        pred.to_zarr(tmp_path / name, consolidated=False)
    rows = {}
    for name in ("pred16.zarr", "pred64.zarr"):
        evaluate(tmp_path / name, tmp_path / "truth.nc", out=tmp_path / name.replace(".", "_"))
        rows[name] = json.loads((tmp_path / name.replace(".", "_") / "metrics.json").read_text())
    (row16,), (row64,) = rows["pred16.zarr"], rows["pred64.zarr"]
    for key in ("RMSE (ens. mean)", "MAE (ens. mean)", "bias", "CRPS", "spread/skill"):
        assert row16[key] == pytest.approx(row64[key], rel=1e-5), key


def test_evaluate_truth_mean_of_a_float16_file():
    """The report's "truth mean" (beside the bias) of a float16 truth read in chunks, on an
    unweighted (Cartesian) grid: summed in float64 (dask summed in float16: inf)."""
    from flexdownscale.evaluation import _truth_mean

    rng = np.random.default_rng(4)
    values = (280 + rng.normal(size=(6, 64, 64))).astype(np.float16)
    truth = xr.DataArray(values, dims=("time", "y", "x")).chunk({"time": 1})
    found = float(_truth_mean(truth, truth, None))
    assert found == pytest.approx(float(values.astype(np.float64).mean()), rel=1e-12)
